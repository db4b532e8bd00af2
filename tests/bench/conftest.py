from tests.train.conftest import tiny_shards  # noqa: F401 (the tiny shard set the bench tests read)
