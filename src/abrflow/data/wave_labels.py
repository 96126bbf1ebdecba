"""The per-wave labels (I, III, V) a model learns from and is scored against: one rule for what a
missing mark means.

Wave V: ``v_present`` says whether the clinician saw it (every source judges V); its latency and
amplitude are ``v_latency_ms``/``v_amplitude_uv``. Waves I and III: a source that marks I or III on
any of its recordings marks them wherever it sees them, so there an unmarked I or III was judged
absent; a source that never marks them (the original project's pickle carries V only) judged
nothing, and its I/III presence is unknown (masked), not "absent". An I or III marked without V
is kept (a retrocochlear lesion can leave wave I alone).
"""

from __future__ import annotations

import numpy as np

from .schema import WAVE_NAMES

V_COLUMN = WAVE_NAMES.index("V")


def marks_minor_waves(records) -> bool:
    """Whether the source marks waves I or III at all (any finite I/III latency)."""
    lat = np.asarray(records.wave_latency_ms)
    return bool(np.isfinite(lat[:, :V_COLUMN]).any())


def wave_labels(records, rows=None, minor_waves_judged: bool | None = None) -> dict[str, np.ndarray]:
    """``present``, ``judged`` (bool [N, 3]), ``latency_ms``, ``amplitude_uv`` (float32 [N, 3], NaN
    where not marked) for ``rows`` of ``records`` (default all), columns in ``WAVE_NAMES`` order.
    ``minor_waves_judged``: :func:`marks_minor_waves` of the whole records when the caller has it
    (a data set reading many batches), else it is found here."""
    take = slice(None) if rows is None else np.asarray(rows, dtype=np.int64)
    lat = np.array(records.wave_latency_ms[take], dtype=np.float32, copy=True)
    amp = np.array(records.wave_amplitude_uv[take], dtype=np.float32, copy=True)
    v_present = np.asarray(records.v_present[take], bool)
    lat[:, V_COLUMN] = records.v_latency_ms[take]
    amp[:, V_COLUMN] = records.v_amplitude_uv[take]
    present = np.isfinite(lat)
    present[:, V_COLUMN] = v_present
    judged = np.ones_like(present)
    judged[:, :V_COLUMN] = marks_minor_waves(records) if minor_waves_judged is None else minor_waves_judged
    lat = np.where(present, lat, np.nan).astype(np.float32)
    amp = np.where(present, amp, np.nan).astype(np.float32)
    return {"present": present, "judged": judged, "latency_ms": lat, "amplitude_uv": amp}
