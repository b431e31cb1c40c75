"""SRE incident timelines: ``oomstream timeline`` (model, sources, terminal view, HTML page, live server).

Only constants the command line needs live here: ``oomstream --help`` imports this package.
"""

GROUP_BY = ("incident", "workload", "node")
DEFAULT_SINCE = "1h"  # Kafka: the range when none is given (never the whole topic)
DEFAULT_MAX_PUBLISH_DELAY = "10m"
