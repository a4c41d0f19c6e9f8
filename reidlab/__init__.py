"""reidlab: Bag of Tricks and BNNeck for person re-identification, one trick at a time."""
from reidlab.config import Config, PRESETS, TABLE1, NECK_PRESETS

__all__ = ["Config", "PRESETS", "TABLE1", "NECK_PRESETS"]
__version__ = "0.1.0"
