#!/usr/bin/env python3
# delay_link.py MS CMD...: runs CMD, forwarding our stdin to it and its stdout to us, each
# byte MS milliseconds late: a link with that one-way latency, for tests/all/remote.rs.
import os, sys, threading, time, subprocess, collections
ms = float(sys.argv[1]) / 1000
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
def pump(src, dst):
    q = collections.deque(); cv = threading.Condition(); done = [False]
    def writer():
        while True:
            with cv:
                while not q and not done[0]: cv.wait()
                if not q and done[0]: break
                t, data = q.popleft()
            d = t + ms - time.monotonic()
            if d > 0: time.sleep(d)
            try: os.write(dst, data)
            except OSError: break
        try: os.close(dst)
        except OSError: pass
    th = threading.Thread(target=writer); th.start()
    while True:
        try: data = os.read(src, 65536)
        except OSError: data = b""
        with cv:
            if not data: done[0] = True; cv.notify(); break
            q.append((time.monotonic(), data)); cv.notify()
    th.join()
a = threading.Thread(target=pump, args=(0, p.stdin.fileno())); a.daemon = True; a.start()
pump(p.stdout.fileno(), 1)
sys.exit(p.wait())
