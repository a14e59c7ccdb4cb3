#!/bin/sh
# mamori-agent debconf config script.
#
# When it runs: before postinst configure (debconf's frontend starts it
# from postinst, or apt runs it earlier to preconfigure). It only asks; the
# postinst writes /etc/default/mamori-agent. The three questions have low
# priority: an interactive install at the default priority asks nothing,
# and a silent rollout preseeds them (docs/deploy.md):
#
#   mamori-agent mamori-agent/server         string   mamori.example.lg.jp:8443
#   mamori-agent mamori-agent/token          password mme_…
#   mamori-agent mamori-agent/ca_fingerprint string   sha256:…
#
# Nothing is asked once /etc/default/mamori-agent exists (upgrade, or
# written by config management): the postinst never changes that file.
set -e
. /usr/share/debconf/confmodule

if [ -e "${DPKG_ROOT:-}/etc/default/mamori-agent" ]; then
	exit 0
fi
db_input low mamori-agent/server || true
db_input low mamori-agent/token || true
db_input low mamori-agent/ca_fingerprint || true
db_go || true
exit 0
