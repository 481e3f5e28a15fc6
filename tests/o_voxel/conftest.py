"""Make the helpers of this folder (`shapes`, `gltf_validator`) importable from its tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
