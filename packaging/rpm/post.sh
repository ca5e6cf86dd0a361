getent group broker-edge >/dev/null || groupadd -r broker-edge
getent passwd broker-edge >/dev/null || useradd -r -g broker-edge -d /var/lib/broker-edge -s /sbin/nologin broker-edge
install -d -o broker-edge -g broker-edge -m 0750 /var/lib/broker-edge
# The configuration may hold passwords: root and the service only.
chgrp broker-edge /etc/broker-edge/broker-edge.conf
chmod 0640 /etc/broker-edge/broker-edge.conf
if [ -d /run/systemd/system ]; then systemctl daemon-reload >/dev/null 2>&1 || :; fi
