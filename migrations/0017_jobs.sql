-- Long work asked for over the API (binding a dataset, a refresh, label and table imports):
-- one row per job, run by a worker process, followed over GET /api/v1/jobs/{id} and the
-- project's live events. Exports keep their own table (0006).
CREATE TABLE jobs (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('bind', 'refresh', 'label_import', 'table_import')),
    -- What the job was asked to do (never a credential: those stay on the project).
    params       jsonb NOT NULL DEFAULT '{}'::jsonb,
    status       text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- Records or files handled so far, out of `total` when it is known.
    done         bigint NOT NULL DEFAULT 0,
    total        bigint,
    result       jsonb,
    -- A failure's body as the API would answer it: {code, message, details?}.
    error        jsonb,
    -- How many times a worker took the job up; one whose worker died is taken up again.
    attempts     integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_by   bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    heartbeat_at timestamptz,
    finished_at  timestamptz
);
CREATE INDEX jobs_project ON jobs (project_id, id DESC);
CREATE INDEX jobs_pending ON jobs (project_id, id) WHERE status IN ('queued', 'running');

-- Written in the same transaction as a job's changes: a job whose worker died after that
-- commit but before it recorded the outcome is finished, not run a second time.
CREATE TABLE job_commits (
    job_id       bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    committed_at timestamptz NOT NULL DEFAULT now()
);
