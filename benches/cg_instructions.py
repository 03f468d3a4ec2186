#!/usr/bin/env python3
"""Per-instruction self cost of the functions of one binary in a callgrind
dump, joined with objdump's disassembly and line tables, per message.

    valgrind --tool=callgrind --dump-instr=yes --compress-pos=no \
        --compress-strings=no --callgrind-out-file=OUT BINARY ARGS...
    benches/cg_instructions.py OUT BINARY 'FUNCTION-REGEX' MESSAGES [MIN]

Prints, for every function whose (demangled) name matches FUNCTION-REGEX,
each instruction executed at least MIN times per message (default 0.05):
the count per message, the address, the instruction and its source line;
then the function's total. MESSAGES is what the dump covers (for ringloop's
echo: the calls of `ringloop::sys::io::write`, as benches/cg_messages.awk
counts them). Build the binary with line tables for the source column
(`CARGO_PROFILE_RELEASE_DEBUG=line-tables-only`, same code generation).
Reads files only; needs objdump (binutils).
"""
import collections
import re
import subprocess
import sys


def main():
    dump, binary, pattern, messages = sys.argv[1:5]
    least = float(sys.argv[5]) if len(sys.argv) > 5 else 0.05
    messages = float(messages)
    cost = collections.Counter()
    call_line = False
    in_binary = False
    with open(dump) as f:
        for line in f:
            if line.startswith('ob='):
                in_binary = binary in line
            elif line.startswith('calls='):
                call_line = True  # the next cost line is the call's, inclusive
            elif line.startswith('0x'):
                if call_line:
                    call_line = False
                elif in_binary:
                    parts = line.split()
                    if len(parts) > 2:
                        cost[int(parts[0], 16)] += int(parts[2])
            else:
                call_line = False
    disassembly = subprocess.run(
        ['objdump', '-d', '--no-show-raw-insn', '-C', '-l', binary],
        capture_output=True, text=True, check=True).stdout
    name, source, total = None, '', 0.0
    for line in disassembly.splitlines():
        head = re.match(r'^([0-9a-f]+) <(.*)>:$', line)
        if head:
            if name is not None:
                print(f'{total:7.1f} total')
            name = head.group(2) if re.search(pattern, head.group(2)) else None
            total = 0.0
            if name is not None:
                print('==', name)
            continue
        if name is None:
            continue
        if line.startswith('/'):
            source = line.rsplit('/', 1)[-1]
            continue
        insn = re.match(r'^\s+([0-9a-f]+):\s+(.*)$', line)
        if insn:
            per = cost.get(int(insn.group(1), 16), 0) / messages
            total += per
            if per >= least:
                print(f'{per:7.2f} {insn.group(1)} {insn.group(2)[:60]:60s} {source}')
    if name is not None:
        print(f'{total:7.1f} total')


if __name__ == '__main__':
    main()
