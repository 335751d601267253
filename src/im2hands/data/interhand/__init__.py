"""InterHand2.6M v1.0 -> samples in our format (``docs/INTERHAND.md``).

- :mod:`.reader`: the official annotation files, streamed (bounded memory), ids normalised.
- :mod:`.select`: which images are prepared, with skip counts (the paper's selection by default).
- :mod:`.predicted`: another method's keypoints, one JSON file per image.
- :mod:`.prepare`: posing, sealing, camera, crop, occupancy and sample writing; the resumable, parallel,
  shardable job behind ``im2hands prepare interhand``.
"""
