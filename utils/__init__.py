"""The bottom layer, importing no other package of the project: LARS and the learning-rate
schedule, checkpoints, run infrastructure (restore, save, the step meter), command-line plumbing,
random-state capture, signals, metrics and plots, and the multi-process helpers."""
