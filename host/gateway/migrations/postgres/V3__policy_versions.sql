-- Policy versions shared by replicas (see host/gateway/src/policy_set/replicas.rs).

-- Every component a replica made live or staged, by sha256 hex digest.
CREATE TABLE policy_blobs (
    digest     TEXT   PRIMARY KEY,
    bytes      BYTEA  NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Each policy slot's state: its live version, the digest of the file it was last loaded
-- from (a replica whose file differs at start makes its file live), and its candidate.
-- `generation` grows with every change; NOTIFY switchyard_policies names the slot.
CREATE TABLE policy_slots (
    slot             TEXT   PRIMARY KEY,
    live_digest      TEXT   NOT NULL,
    file_digest      TEXT   NOT NULL,
    candidate_digest TEXT,
    candidate_mode   TEXT CHECK (candidate_mode IN ('canary', 'shadow')),
    canary_percent   DOUBLE PRECISION,
    generation       BIGINT NOT NULL,
    changed_by       TEXT   NOT NULL,
    changed_ms       BIGINT NOT NULL
);
