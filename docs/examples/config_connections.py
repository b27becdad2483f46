"""One line per kind of deployment; each is a valid RQ_CONNECTION (or queue entry)."""

# TLS, the server checked against a private CA
TLS = "rediss://redis.example:6380/0?ssl_ca_certs=/etc/ssl/ca.pem"
# TLS with a client certificate
TLS_CLIENT_CERT = {"host": "db", "ssl": True, "ssl_certfile": "c.pem", "ssl_keyfile": "k.pem"}
# an ACL user and password
ACL_USER = "redis://jobs:s3cret@redis.example:6379/0"
# a unix socket, database 2
UNIX_SOCKET = "unix:///run/redis/redis.sock?db=2"
# database 5, with a name in CLIENT LIST
NAMED_CLIENT = "redis://redis.example:6379/5?client_name=web"
# Sentinel: the primary of "mymaster", with its password
SENTINEL = "redis+sentinel://:s3cret@s1:26379,s2:26379,s3:26379/mymaster/0"
# the same as a dict ("sentinel_kwargs": {...} for the sentinels' own password)
SENTINEL_DICT = {"sentinels": [["s1", 26379], ["s2", 26379]], "service_name": "mymaster"}
# RESP3 for the pools
RESP3 = {"host": "redis.example", "protocol": 3}
# a pool of at most 20 connections per event loop (the default is 50)
SMALL_POOL = {"host": "redis.example", "max_connections": 20}
