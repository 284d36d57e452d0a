"""Body-cam docking folders (`camera.type = "bodycam"`): every frame of every docked clip, once.

`source` is the `FrameSource`; `catalogue` decides which clip comes next; `folder` finds complete clip
files; `state` keeps per-clip progress in SQLite; `clip_time` reads recording times; `settings` is the
`[camera.bodycam]` section. Nothing is imported here, so the settings load without OpenCV.
"""
