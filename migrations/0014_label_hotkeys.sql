-- A label's own hotkey, when its owner chose one (the others get theirs from the display
-- order, leaves first). One key, a digit or a lowercase letter that the labeling screens do
-- not use for something else (server/projects/label_tree.py HOTKEYS); one label per key
-- in a project. Saving a tree clears the keys before setting them, so two labels can swap.
ALTER TABLE labels ADD COLUMN hotkey text
    CHECK (hotkey IS NULL OR hotkey ~ '^[0-9qwtyuiosdgjklzxcnm]$');
CREATE UNIQUE INDEX labels_hotkey ON labels (project_id, hotkey) WHERE hotkey IS NOT NULL;
