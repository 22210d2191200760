-- Per-tenant rate limits shared by replicas (see host/gateway/src/ledger/rate.rs): each
-- limit's "theoretical arrival time" in microseconds of the database's clock, so that
-- replicas whose clocks differ still agree.
CREATE TABLE rate_limits (
    tenant          TEXT   PRIMARY KEY,
    requests_tat_us BIGINT NOT NULL,
    tokens_tat_us   BIGINT NOT NULL
);

-- Admits one request costing `requests_us` and `tokens_us` (µs of TAT) against a window
-- of `window_us`, or says which limit refused it and how long until it would fit. The
-- row lock orders replicas' admissions of one tenant; a refusal changes nothing.
CREATE FUNCTION rate_admit(p_tenant TEXT, p_requests_us BIGINT, p_tokens_us BIGINT, p_window_us BIGINT)
RETURNS TABLE (refused TEXT, wait_us BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    now_us    BIGINT;
    req_start BIGINT;
    tok_start BIGINT;
BEGIN
    INSERT INTO rate_limits (tenant, requests_tat_us, tokens_tat_us)
        VALUES (p_tenant, 0, 0) ON CONFLICT (tenant) DO NOTHING;
    SELECT requests_tat_us, tokens_tat_us INTO req_start, tok_start
        FROM rate_limits WHERE tenant = p_tenant FOR UPDATE;
    now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    req_start := GREATEST(req_start, now_us);
    tok_start := GREATEST(tok_start, now_us);
    IF p_requests_us > 0 AND req_start - now_us + LEAST(p_requests_us, p_window_us) > p_window_us THEN
        RETURN QUERY SELECT 'requests'::TEXT, req_start - now_us + LEAST(p_requests_us, p_window_us) - p_window_us;
        RETURN;
    END IF;
    IF p_tokens_us > 0 AND tok_start - now_us + LEAST(p_tokens_us, p_window_us) > p_window_us THEN
        RETURN QUERY SELECT 'tokens'::TEXT, tok_start - now_us + LEAST(p_tokens_us, p_window_us) - p_window_us;
        RETURN;
    END IF;
    UPDATE rate_limits
        SET requests_tat_us = req_start + p_requests_us, tokens_tat_us = tok_start + p_tokens_us
        WHERE tenant = p_tenant;
    RETURN QUERY SELECT NULL::TEXT, 0::BIGINT;
END
$$;
