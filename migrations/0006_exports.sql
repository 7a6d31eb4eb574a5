-- Exports: one row per requested export, run in the background by any server process.
CREATE TABLE exports (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL,
    format       text NOT NULL CHECK (format IN ('coco', 'jsonl', 'csv', 'masks', 'voc', 'yolo')),
    filters      jsonb NOT NULL,
    -- Prepended to item keys where a format writes image URLs (AutoML's image_url).
    image_url_prefix text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'failed')),
    -- Items written so far out of the items the export covers.
    done         integer NOT NULL DEFAULT 0,
    total        integer,
    -- Relative to the data directory's exports folder; set when the file is complete.
    file_name    text,
    size_bytes   bigint,
    warnings     jsonb NOT NULL DEFAULT '[]'::jsonb,
    error        text,
    created_by   bigint NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    -- A running export whose process stops beating is taken over by another one.
    heartbeat_at timestamptz
);
CREATE INDEX exports_project ON exports (project_id, id DESC);
CREATE INDEX exports_pending ON exports (id) WHERE status IN ('queued', 'running');
