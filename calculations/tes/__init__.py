"""GA4GH Task Execution Service 1.1 (https://github.com/ga4gh/task-execution-schemas): a TES task is
a calculation of the pseudo-tool `TES_TOOL` whose executors run in containers."""

TES_TOOL = "ga4gh-tes"
TES_VERSION = "1.1.0"
