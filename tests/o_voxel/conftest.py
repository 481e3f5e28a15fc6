"""Make the helpers of this folder (`ov_shapes`, `ov_fields`, `ov_gltf_validator`) importable from its tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
