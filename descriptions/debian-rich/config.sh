#!/bin/bash
# Runs inside the image root after packages, overlay and users are in place.
set -euo pipefail
test -f /.profile && . /.profile

# the application's home and data directory belong to the app user
mkdir -p /srv/app/data /var/log/app
chown -R app:app /srv/app /var/log/app

# generate only the locale the image uses
echo "en_US.UTF-8 UTF-8" > /etc/locale.gen
locale-gen

# ping may send raw ICMP without being setuid: Debian 13's iputils-ping relies on
# net.ipv4.ping_group_range instead, but containers often run where that sysctl is unset
setcap cap_net_raw+ep /usr/bin/ping
