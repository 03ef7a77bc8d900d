"""scripts/compare, by job (scripts/compare.py is its entry point and --help text):
checks.py the set-up checks; runs.py the commands, starting and timing each run; tables.py
the report's tables; plot.py the plot; layers.py --layers; cli.py the options and each mode
from start to finish; base.py what they share (paths, side names, the reference scripts'
commands, scripts.reference.common)."""
