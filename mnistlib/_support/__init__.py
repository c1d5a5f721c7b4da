"""Private support for the rest of mnistlib: safe files, safe checkpoint reading, IDX files, signals.

Nothing here is taught in a lesson and nothing here imports the rest of the package: atomic writes
and the clean-up after killed runs (:mod:`.files`), reading a checkpoint file without running code
and checking its fields (:mod:`.checkpoint_file`), checking MNIST's IDX files (:mod:`.idx`), turning
any image input into gray pixels (:mod:`.images`) and holding Ctrl-C during a write (:mod:`.signals`).
"""
