-- Devices per tenant and lifecycle state, kept exact by triggers so the
-- dashboard's summary reads 8 rows instead of counting the whole fleet.
CREATE TABLE device_state_counts (
    tenant_id  TEXT NOT NULL,
    state      TEXT NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, state)
) WITHOUT ROWID;

INSERT INTO device_state_counts (tenant_id, state, n)
    SELECT tenant_id, state, COUNT(*) FROM devices GROUP BY tenant_id, state;

CREATE TRIGGER devices_count_insert AFTER INSERT ON devices BEGIN
    INSERT INTO device_state_counts (tenant_id, state, n) VALUES (NEW.tenant_id, NEW.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER devices_count_delete AFTER DELETE ON devices BEGIN
    UPDATE device_state_counts SET n = n - 1 WHERE tenant_id = OLD.tenant_id AND state = OLD.state;
END;

CREATE TRIGGER devices_count_update AFTER UPDATE OF tenant_id, state ON devices
    WHEN OLD.tenant_id <> NEW.tenant_id OR OLD.state <> NEW.state
BEGIN
    UPDATE device_state_counts SET n = n - 1 WHERE tenant_id = OLD.tenant_id AND state = OLD.state;
    INSERT INTO device_state_counts (tenant_id, state, n) VALUES (NEW.tenant_id, NEW.state, 1)
        ON CONFLICT (tenant_id, state) DO UPDATE SET n = n + 1;
END;

-- Product + firmware range (campaign targeting): narrow ranges read only
-- the product's matching devices instead of a fleet-wide firmware range.
CREATE INDEX devices_product_fw ON devices (tenant_id, product_id, fw_key, id);
