"""syslogsrc: a Twisted-based network ingest framework for AxoSyslog / syslog-ng."""

__version__ = "0.1.0"
