"""The keys of a training batch, named once.

A batch holds the clip and what the mask and the target read. Arrays read from the shards keep
their schema names (`shards.schema.ARRAYS`: mv, mv_valid, flow, homography, hog, traj,
traj_valid); the keys below are the ones the loader adds. Shapes (B clips, T frames, S input
side): see train/clips/dataset.py.
"""
from __future__ import annotations

VIDEO = "video"            # (B, 3, T, S, S) float32, normalized: what the model reads
VIDEO_U8 = "video_u8"      # assemble "uint8": (B, T, S, S, 3) uint8 levels, cropped, resized, flipped
LEVELS = "levels"          # a test view's uint8 levels (the view cache's fill)
JPEG, JPEG_LEN, CROP, FLIP = "jpeg", "jpeg_len", "crop", "flip"  # assemble "device": bytes, box, mirror
# MME's HOG along the trajectories (target mme): the frames the tracks visit, the box of cells
# their positions read, the positions (box cells, x before y) and each step's frame
HOG_JPEG, HOG_JPEG_LEN, HOG_BOX, HOG_AT, HOG_FRAME = "hog_jpeg", "hog_jpeg_len", "hog_box", "hog_at", "hog_frame"
FRAME_STEP = "frame_step"  # stored frames between two clip frames (the masks scale motion by it)
TRAJ_HOG = "traj_hog"      # MME: HOG sampled along each trajectory
LABEL = "label"            # fine-tuning: the class index
ITEM = "item"              # a test view's index in its split's view list
SAMPLE = "sample"          # a clip's global sample number, while it travels to the collate (MaskCollate)
SKIPPED = "skipped"        # per-sample JSON list of {video, reason} the loader skipped for it
