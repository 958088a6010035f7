-- The seen clocks (causal context) of a unit at a keyframe: JSON, or empty for none.
ALTER TABLE keyframes ADD COLUMN seen TEXT NOT NULL DEFAULT '';
