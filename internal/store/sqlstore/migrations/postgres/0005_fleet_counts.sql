-- Devices per tenant and lifecycle state, kept exact by a trigger so the
-- dashboard's summary reads 8 rows instead of counting the whole fleet.
CREATE TABLE device_state_counts (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    state      TEXT COLLATE "C" NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, state)
);

INSERT INTO device_state_counts (tenant_id, state, n)
    SELECT tenant_id, state, COUNT(*) FROM devices GROUP BY tenant_id, state;

CREATE FUNCTION device_state_counts_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO device_state_counts AS c (tenant_id, state, n) VALUES (NEW.tenant_id, NEW.state, 1)
            ON CONFLICT (tenant_id, state) DO UPDATE SET n = c.n + 1;
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE device_state_counts SET n = n - 1 WHERE tenant_id = OLD.tenant_id AND state = OLD.state;
    ELSE
        -- Both rows in key order, so two opposite transitions cannot deadlock.
        INSERT INTO device_state_counts AS c (tenant_id, state, n)
            SELECT v.tenant_id, v.state, v.n
            FROM (VALUES (OLD.tenant_id, OLD.state, -1), (NEW.tenant_id, NEW.state, 1)) AS v (tenant_id, state, n)
            ORDER BY v.tenant_id, v.state
            ON CONFLICT (tenant_id, state) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

-- Deferred to commit: the counter rows are shared by every device of a
-- tenant, and the claim path takes the tenant's audit head before it changes
-- a state, while other writes change a state before they audit. Touching
-- the counters immediately deadlocks those two orders; at commit every
-- other lock is already held.
CREATE CONSTRAINT TRIGGER devices_count_insert_delete AFTER INSERT OR DELETE ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION device_state_counts_sync();
CREATE CONSTRAINT TRIGGER devices_count_update AFTER UPDATE OF tenant_id, state ON devices
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id OR OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION device_state_counts_sync();

-- Product + firmware range (campaign targeting): narrow ranges read only
-- the product's matching devices instead of a fleet-wide firmware range.
CREATE INDEX devices_product_fw ON devices (tenant_id, product_id, fw_key, id);
