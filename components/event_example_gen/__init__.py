"""EventExampleGen: a FileBasedExampleGen whose executor reads any activity log described by an EventSpec."""
