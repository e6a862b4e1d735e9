complete -c scaidrive-devserver -l data -d 'Directory for the metadata database and content blobs (created if missing)' -r -F
complete -c scaidrive-devserver -l listen -d 'Address to listen on; port 0 picks a free port (printed on the first line)' -r
complete -c scaidrive-devserver -l public-url -d 'Base URL used in link `url`/`short_url` fields (default: the bound address)' -r
complete -c scaidrive-devserver -l token -d 'Static access token of the default user (repeatable). Never expires unless the admin route expires it' -r
complete -c scaidrive-devserver -l share-name -d 'Name of the default share, created on first start' -r
complete -c scaidrive-devserver -l quota-bytes -d 'Quota of the default share in bytes, applied on first start (507 when exceeded)' -r
complete -c scaidrive-devserver -l rate-limit -d 'Per-token rate limit in cost units per minute (documented default 1000); 0 = off' -r
complete -c scaidrive-devserver -l user-rate-limit -d 'Per-user rate limit across all the user\'s tokens, cost units per minute (documented default 5000); 0 = none' -r
complete -c scaidrive-devserver -l tenant-rate-limit -d 'Per-tenant rate limit across all its users, cost units per minute (documented default 50000); 0 = none' -r
complete -c scaidrive-devserver -l max-file-size -d 'Per-file size cap in bytes (413 above it, for multipart uploads and upload sessions alike)' -r
complete -c scaidrive-devserver -l max-request-size -d 'Per-request cap in bytes on a multipart upload\'s body (413 above it; upload sessions are bound only by --max-file-size)' -r
complete -c scaidrive-devserver -l session-ttl -d 'Upload session inactivity expiry in seconds (documented: 24 h)' -r
complete -c scaidrive-devserver -l access-token-ttl -d 'Lifetime of access tokens issued by POST /api/v1/auth/token, in seconds' -r
complete -c scaidrive-devserver -l error-shape -d 'Error body shape: `envelope` ({"status","error":{"code",...},"meta"}) or `detail` ({"detail": ...}; 429 stays enveloped as documented)' -r -f -a "envelope\t'`{"status":"error","error":{"code","message",...},"meta":{"request_id"}}` (the seed\'s)'
detail\t'`{"detail": "..."}` (FastAPI\'s), except 429 which the rate-limit page documents enveloped'"
complete -c scaidrive-devserver -l fail-rate -d 'Fault: probability (0..1) that a request fails with 503 before it is applied' -r
complete -c scaidrive-devserver -l fail-after-rate -d 'Fault: probability that a request is applied but answered with 500' -r
complete -c scaidrive-devserver -l latency-ms -d 'Fault: added latency per API request, in milliseconds' -r
complete -c scaidrive-devserver -l drop-rate -d 'Fault: probability that the connection is dropped mid-request' -r
complete -c scaidrive-devserver -l log -d 'Log filter (RUST_LOG syntax)' -r
complete -c scaidrive-devserver -s h -l help -d 'Print help (see more with \'--help\')'
complete -c scaidrive-devserver -s V -l version -d 'Print version'
