"""Networks of Im2Hands: image encoder, attention, occupancy networks, keypoint refinement, checkpoints."""
