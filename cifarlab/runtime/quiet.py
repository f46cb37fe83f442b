"""Keep TensorFlow's C++ info and warning lines off the console.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it is first imported, so
entry points call ``quiet_tensorflow()`` before anything imports it. A user who
set the variable keeps their setting.
"""

from __future__ import annotations

import os

TF_LOG_LEVEL = "2"  # errors only


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
