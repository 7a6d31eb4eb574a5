-- Work distribution: leases (who holds or held which item) and submitted annotations.
-- Postgres is the truth; the Redis dispatcher is rebuilt from these tables.
CREATE TABLE leases (
    id          text COLLATE "C" PRIMARY KEY,
    project_id  bigint NOT NULL,
    item_id     bigint NOT NULL,
    user_id     bigint NOT NULL,
    state       text NOT NULL CHECK (state IN ('active', 'submitted', 'skipped', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    finished_at timestamptz
);
-- A labeler is never given the same item twice: one lease row per (item, labeler), ever.
CREATE UNIQUE INDEX leases_item_user ON leases (item_id, user_id);
CREATE INDEX leases_project_active ON leases (project_id) WHERE state = 'active';

CREATE TABLE annotations (
    id                   bigserial PRIMARY KEY,
    project_id           bigint NOT NULL,
    item_id              bigint NOT NULL,
    user_id              bigint NOT NULL,
    lease_id             text COLLATE "C" NOT NULL UNIQUE,
    data                 jsonb NOT NULL,
    started_from_prelabel boolean NOT NULL DEFAULT false,
    duration_ms          integer,
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (item_id, user_id)
);
CREATE INDEX annotations_project_time ON annotations (project_id, created_at);

-- How many labelers an item currently needs (starts at the project's min, rises on
-- disagreement up to max), and how its final label was reached.
ALTER TABLE items ADD COLUMN target smallint;
ALTER TABLE items ADD COLUMN agreement real;
ALTER TABLE items ADD COLUMN decided_at timestamptz;
ALTER TABLE items ADD COLUMN decided_by_user bigint;
