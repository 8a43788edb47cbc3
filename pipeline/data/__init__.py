"""What the images are and where they come from: scanning a folder or manifest, file facts,
the lab's data roots, the train / held-out split, controlled re-encoding, a run's images as the
run saw them and balanced samples of them (:mod:`pipeline.data.as_run`),
and the offline demo set (:mod:`pipeline.data.demo`).
"""
