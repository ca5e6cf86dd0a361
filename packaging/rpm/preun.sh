if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
  systemctl --no-reload disable --now broker-edge.service >/dev/null 2>&1 || :
fi
