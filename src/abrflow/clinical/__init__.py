"""The audiology of abrflow, torch-free: one home for every clinical rule.

Below both ``inference`` (which runs networks) and ``evaluation`` (which scores them); imports only
``data``, ``config``, NumPy and SciPy. What lives here:

- ``norms``: published norms (wave V latency by level and age);
- ``picker``, ``classical_thresholds``, ``features``: the classical methods (wave V picker,
  cross-covariance, lowest peak, protocol floor, hand features);
- ``thresholds``: the per-ear logistic threshold of a level series and the model's criteria;
- ``replication``: split-half replication, the model's gate and an export's own-noise criterion;
- ``levels``: level units and the model's view of a series;
- ``ear_rule``: THE per-ear rule every caller uses (``ear_thresholds``);
- ``calibration``: temperature scaling and split-conformal intervals;
- ``series``: grouping recordings into an ear's level series.
"""
