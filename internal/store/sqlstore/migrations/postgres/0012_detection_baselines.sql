-- Behaviour detection's learned state per device (rate baselines, learned
-- ports, destinations and source addresses, when learning started): a JSON
-- document with a version, saved every few minutes by the node the device
-- is connected to, so that a restart or a move to another node does not
-- start learning again. Sliding windows and firing alarms are not in it.
CREATE TABLE detection_baselines (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    device_id   TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    doc         TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
-- Deleting a device finds its rows by device alone.
CREATE INDEX detection_baselines_device ON detection_baselines (device_id);
