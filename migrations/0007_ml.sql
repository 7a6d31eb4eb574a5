-- ML assistance: model versions per project, predictions computed ahead of the labelers,
-- and the similarity order clustering gives to classification items.
CREATE TABLE ml_models (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL,
    version       integer NOT NULL,
    status        text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'training', 'ready', 'failed', 'retired')),
    -- Why it was trained: 'threshold' (enough decided items), 'more_labels', 'owner'.
    reason        text NOT NULL,
    trained_on    integer,
    threshold     real,
    metrics       jsonb,
    class_counts  jsonb,
    state_path    text,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    -- When the items were put in similarity order with this version (classification).
    clustered_at  timestamptz,
    -- Prelabels of this version written into labelers' documents, submitted, and
    -- submitted exactly as suggested.
    prelabels_shown     integer NOT NULL DEFAULT 0,
    prelabels_submitted integer NOT NULL DEFAULT 0,
    prelabels_accepted  integer NOT NULL DEFAULT 0,
    UNIQUE (project_id, version)
);
-- At most one version waiting or training per project.
CREATE UNIQUE INDEX ml_models_one_pending ON ml_models (project_id) WHERE status IN ('queued', 'training');

CREATE TABLE ml_predictions (
    item_id       bigint PRIMARY KEY,
    project_id    bigint NOT NULL,
    model_version integer NOT NULL,
    -- The prelabel in plain JSON form (only what clears the threshold), {} when nothing does.
    prelabel      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ml_predictions_version ON ml_predictions (project_id, model_version);

-- Queue order from clustering (similar items next to each other); NULL = shuffle order.
ALTER TABLE items ADD COLUMN cluster_rank double precision;
-- Which model version's prelabel went into this lease's document.
ALTER TABLE leases ADD COLUMN prelabel_version integer;
