"""Keras model files read safely: their config (`config`), what they declare before anything is allocated
(`sniff`), the code gate (`safety`), the objects a loader is handed (`stand_ins`), the loaders (`load`) and running
a loaded model (`run`). Re-exports the light modules only: `load` and `run` import TensorFlow, so callers name them."""

from ganport.keras_files.config import read_config, saved_keras_version
from ganport.keras_files.safety import require_no_revived_layers, require_safe
from ganport.keras_files.sniff import require_readable_container, require_stored_within_budget
from ganport.keras_files.stand_ins import loader_objects, user_custom_objects

__all__ = [
    "loader_objects",
    "read_config",
    "require_no_revived_layers",
    "require_readable_container",
    "require_safe",
    "require_stored_within_budget",
    "saved_keras_version",
    "user_custom_objects",
]
