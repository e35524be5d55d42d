-- firedrill's shared store, version 1. Applied by `firedrill store migrate` (and by every
-- command that opens the store) through refinery, under an advisory lock.

-- One row per run, written once (idempotent by run id). `record` is the versioned JSON
-- record exactly as `reports/` holds it; `lean` is what history, the gates and `report`
-- read of it (report::store::lean), so reading 100,000 runs never parses a trace.
CREATE TABLE firedrill_runs (
    run_id       text PRIMARY KEY,
    experiment   text NOT NULL,
    environment  text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text NOT NULL,
    lean         text NOT NULL,
    record       text NOT NULL,
    written_at   timestamptz NOT NULL DEFAULT now(),
    written_by   text NOT NULL
);
CREATE INDEX firedrill_runs_drill ON firedrill_runs (experiment, environment, finished_at);
CREATE INDEX firedrill_runs_finished ON firedrill_runs (finished_at);

-- The halt lever every runner honours: at most one row.
CREATE TABLE firedrill_halt (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    reason  text NOT NULL,
    since   timestamptz NOT NULL,
    by_whom text NOT NULL
);

-- Who holds a scope. The lock itself is a session advisory lock (it ends with the runner's
-- connection); this row only names the holder, and is trusted only while the holder's
-- backend still holds the lock (pg_locks).
CREATE TABLE firedrill_scope_holders (
    scope        text PRIMARY KEY,
    run_id       text NOT NULL,
    experiment   text NOT NULL,
    host         text NOT NULL,
    pid          integer NOT NULL,
    since        timestamptz NOT NULL,
    backend_pid  integer NOT NULL
);

-- The write-ahead journal of each run, mirrored line by line (the same JSON lines as the
-- runner's local journal), and the runner's heartbeat.
CREATE TABLE firedrill_journals (
    run_id        text PRIMARY KEY,
    host          text NOT NULL,
    experiment    text NOT NULL,
    environment   text NOT NULL,
    scopes        text[] NOT NULL,
    closed        boolean NOT NULL DEFAULT false,
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX firedrill_journals_open ON firedrill_journals (closed) WHERE NOT closed;
CREATE TABLE firedrill_journal_lines (
    run_id  text NOT NULL REFERENCES firedrill_journals (run_id) ON DELETE CASCADE,
    n       integer NOT NULL,
    line    text NOT NULL,
    PRIMARY KEY (run_id, n)
);
