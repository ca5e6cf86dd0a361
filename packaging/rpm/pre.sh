# %pre: the service user before the files (the config's group is broker-edge).
if command -v systemd-sysusers >/dev/null 2>&1; then
  echo 'u broker-edge - "Broker Edge" /var/lib/broker-edge /usr/sbin/nologin' |
    systemd-sysusers --replace=/usr/lib/sysusers.d/broker-edge.conf - >/dev/null 2>&1 || :
fi
getent group broker-edge >/dev/null || groupadd -r broker-edge
getent passwd broker-edge >/dev/null || useradd -r -g broker-edge -d /var/lib/broker-edge -s /sbin/nologin -c "Broker Edge" broker-edge
exit 0
