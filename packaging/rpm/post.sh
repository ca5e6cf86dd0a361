getent group broker-edge >/dev/null || groupadd -r broker-edge
getent passwd broker-edge >/dev/null || useradd -r -g broker-edge -d /var/lib/broker-edge -s /sbin/nologin broker-edge
install -d -o broker-edge -g broker-edge -m 0750 /var/lib/broker-edge
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
