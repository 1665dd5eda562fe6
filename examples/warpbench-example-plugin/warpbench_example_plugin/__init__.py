"""An example warpbench plugin: one warper, ``identity_blend``, registered through an entry point."""
