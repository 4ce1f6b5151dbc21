-- A refusal repeated by one client for one reason within a minute is kept as one entry that
-- counts its occurrences, so that a flood of refused sign-ins adds a handful of rows, not one
-- per request. Every other entry counts 1.
ALTER TABLE audit_log ADD COLUMN occurrences BIGINT NOT NULL DEFAULT 1;
