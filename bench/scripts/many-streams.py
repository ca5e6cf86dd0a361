#!/usr/bin/env python3
# Creates N streams (S<i> on s.<i>.>) over one raw NATS connection, then
# publishes one message to each, timing both. Usage:
#   target/release/broker-edge -js -sd /tmp/many -p 14226 -m 18226 &
#   python3 bench/scripts/many-streams.py 14226 1000
# then RSS from /proc/<pid>/status, disk with du -sh on the store.
import socket,time,json,sys
s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); s.recv(4096)
s.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB in.> 1\r\n')
N=int(sys.argv[2]); t=time.time(); buf=b''
def wait(n):
    global buf
    got=0
    while got<n:
        buf+=s.recv(1<<20)
        got=buf.count(b'MSG in.')
    buf=b''
for i in range(N):
    body=json.dumps({"name":f"S{i}","subjects":[f"s.{i}.>"]}).encode()
    s.sendall(b'PUB $JS.API.STREAM.CREATE.S%d in.%d %d\r\n%s\r\n'%(i,i,len(body),body))
    if i%50==49: wait(50)
wait(N%50)
print("created",N,"in",round(time.time()-t,2),"s")
t=time.time()
for i in range(N):
    s.sendall(b'PUB s.%d.x in.p%d 5\r\nhello\r\n'%(i,i))
    if i%100==99: wait(100)
wait(N%100)
print("published",N,"in",round(time.time()-t,2),"s")
