-- Projects, their label trees and their members.
CREATE TABLE projects (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL,
    media_type        text NOT NULL DEFAULT 'image' CHECK (media_type IN ('image')),
    task_type         text NOT NULL
        CHECK (task_type IN ('multiclass', 'multilabel', 'bbox', 'polygon', 'semantic')),
    status            text NOT NULL DEFAULT 'initializing'
        CHECK (status IN ('initializing', 'running', 'paused', 'completed')),
    instructions_text text NOT NULL DEFAULT '',
    instructions_html text NOT NULL DEFAULT '',
    instructions_url  text,
    consensus         jsonb NOT NULL,
    ml_assist         jsonb NOT NULL,
    dataset           jsonb,
    refresh           jsonb NOT NULL DEFAULT '{"enabled": false, "interval_s": 3600}',
    last_refresh_at   timestamptz,
    created_by        bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    deleted_at        timestamptz,
    CHECK (task_type <> 'polygon' OR NOT (consensus ->> 'enabled')::boolean),
    CHECK (task_type <> 'semantic' OR NOT (ml_assist ->> 'enabled')::boolean)
);

-- Every name a project has ever had stays taken, even after rename or deletion.
CREATE TABLE project_names (
    name_key   text PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id),
    taken_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE labels (
    id         bigserial PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    parent_id  bigint REFERENCES labels (id) ON DELETE CASCADE,
    -- 0 for top-level labels, so the sibling-uniqueness constraint sees NULL parents.
    parent_key bigint NOT NULL DEFAULT 0,
    name       text NOT NULL,
    name_key   text NOT NULL,
    position   integer NOT NULL,
    depth      smallint NOT NULL CHECK (depth BETWEEN 1 AND 6),
    -- Set the first time an annotation uses the label; used labels cannot be deleted.
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Deferred so a reorder or swap of sibling names inside one edit is legal.
    CONSTRAINT labels_sibling_name UNIQUE (project_id, parent_key, name_key)
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX labels_project ON labels (project_id, position);

CREATE TABLE memberships (
    project_id bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'reviewer', 'labeler')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
