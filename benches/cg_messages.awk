# Messages covered by a callgrind dump, and user-space instructions per
# message: prints "MESSAGES INSTRUCTIONS-PER-MESSAGE" ("0 ?" when no message
# was counted, e.g. a server starved under load). Messages are calls of
# glibc's `send` (tokio, the mio loop) or, for ringloop, which makes the
# system call itself, of `ringloop::sys::io::write` plus, on io_uring, of
# `ringloop::sys::uring::ring::Ring::send` (a send handed to the ring);
# times `depth` (-v
# depth=N, default 1: replies per write, e.g. pipelined HTTP requests).
# Reads dumps with or without --compress-strings. Used by benches/costs.sh,
# benches/callgrind.sh and benches/cg_echo_breakdown.sh.
/^summary:/ { total = $2 }
/^cfn=/ {
    id = $1; sub(/^cfn=/, "", id)
    name = $0; sub(/^cfn=(\([0-9]+\) ?)?/, "", name)
    if (name != "") names[id] = name
    cur = names[id]; next
}
/^fn=/ {
    id = $1; sub(/^fn=/, "", id)
    name = $0; sub(/^fn=(\([0-9]+\) ?)?/, "", name)
    if (name != "") names[id] = name
    next
}
/^calls=/ { split($0, a, /[= ]/); if (cur == "send") sends += a[2]; if (cur == "ringloop::sys::io::write" || cur == "ringloop::sys::uring::ring::Ring::send") writes += a[2]; cur = ""; next }
END {
    if (writes) sends = writes
    m = sends * (depth ? depth : 1)
    if (m) printf "%d %.0f\n", m, total / m; else print "0 ?"
}
