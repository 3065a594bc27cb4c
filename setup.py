"""Build hook: ship the default model inside the wheel.

All metadata lives in pyproject.toml. The only thing this file adds is a ``build_py`` step that
copies ``models/<DEFAULT_MODEL>/`` (the single copy in the repository) into the build tree as
``caduceus_cli/_models/<DEFAULT_MODEL>/``, where ``default_model_dir()`` finds it in a
non-editable install. An editable install reads ``models/`` of the checkout directly.
MANIFEST.in grafts ``models/`` into the sdist, so a wheel built from the sdist carries it too.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

# keep in step with caduceus_cli.model.loading.DEFAULT_MODEL_NAME
DEFAULT_MODEL = "caduceus-ps-hg-chr20-d128-n4"
REQUIRED_FILES = ("config.json", "model.safetensors")
ROOT = Path(__file__).resolve().parent


class build_py_with_model(build_py):
    """``build_py`` that also places the default model under ``caduceus_cli/_models/``."""

    def _model_mapping(self) -> dict[str, str]:
        src = ROOT / "models" / DEFAULT_MODEL
        missing = [name for name in REQUIRED_FILES if not (src / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{src}: missing {', '.join(missing)}; the wheel must carry the default model "
                "(building from an sdist? MANIFEST.in must graft models/)"
            )
        dst = os.path.join(self.build_lib, "caduceus_cli", "_models", DEFAULT_MODEL)
        return {os.path.join(dst, f.name): str(f) for f in sorted(src.iterdir()) if f.is_file()}

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install uses models/ of the checkout
            return
        for target, source in self._model_mapping().items():
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:  # the base class already listed get_output_mapping()
            return outputs
        return outputs + list(self._model_mapping())

    def get_output_mapping(self) -> dict[str, str]:
        # used by editable_wheel (strict mode links these files into its tree)
        return {**super().get_output_mapping(), **self._model_mapping()}


setup(cmdclass={"build_py": build_py_with_model})
