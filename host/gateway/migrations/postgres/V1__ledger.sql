-- The spend ledger on PostgreSQL (see host/gateway/src/ledger/postgres.rs). Amounts are
-- integer billionths of a dollar ("nanos"), so that sums are exact.

-- One row per upstream attempt, written by the replica that reserved it.
CREATE TABLE attempts (
    id             BIGSERIAL PRIMARY KEY,
    tenant         TEXT    NOT NULL,
    day            BIGINT  NOT NULL,  -- days since 1970-01-01 (UTC)
    month          BIGINT  NOT NULL,  -- year * 12 + month - 1
    request_id     TEXT    NOT NULL,
    attempt        BIGINT  NOT NULL,
    backend        TEXT    NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('reserved', 'settled', 'released')),
    estimate_nanos BIGINT  NOT NULL,
    cost_nanos     BIGINT,
    recovered      BOOLEAN NOT NULL DEFAULT false,
    replica        TEXT    NOT NULL,
    created_ms     BIGINT  NOT NULL,
    UNIQUE (replica, request_id, attempt)
);
-- Open reservations, by replica: what recovery looks for.
CREATE INDEX attempts_open ON attempts (replica) WHERE state = 'reserved';

-- Spend per tenant per day and per month (settled cost plus open reservations), kept in
-- the same transactions as the attempt rows. A hard-capped tenant's reservation is a
-- conditional update of its month row, so replicas cannot pass the cap together.
CREATE TABLE daily_totals (
    tenant TEXT   NOT NULL,
    day    BIGINT NOT NULL,
    month  BIGINT NOT NULL,
    nanos  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE month_totals (
    tenant TEXT   NOT NULL,
    month  BIGINT NOT NULL,
    nanos  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, month)
);

-- Live replicas. A replica renews its lease every second; the reservations of one whose
-- lease expired are settled at their estimate by any other (or by its own restart).
CREATE TABLE replicas (
    id             TEXT   PRIMARY KEY,
    lease_until_ms BIGINT NOT NULL,
    started_ms     BIGINT NOT NULL
);
