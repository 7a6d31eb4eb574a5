"""Projects: their settings, members, label tree and instructions, and who may do what in them."""
