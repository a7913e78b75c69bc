-- The failure gate's baseline, set when an operator resumes a campaign the
-- gate paused: the failures and devices told up to then no longer count,
-- and the waves up to gate_wave are taken as passed.
ALTER TABLE campaigns ADD COLUMN gate_failed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN gate_told BIGINT NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN gate_wave BIGINT NOT NULL DEFAULT 0;
