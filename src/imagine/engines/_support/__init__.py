"""Engine plumbing written once: what every engine needs and none should rewrite."""
