#!/bin/sh
# Rebuilds testdata/sysfs/mixed: a sysfs tree with the devices the media
# control must tell apart. Paths, attribute names and values follow what
# real kernels (6.1, 6.18) show for these devices; the USB and MMC parts are
# written down from real machines and qemu guests, the loop/virtio parts were
# copied from this build machine. Only the attributes the classifier reads
# are present. Run from testdata/sysfs: sh make-mixed.sh
set -eu
R=mixed
rm -rf "$R"
mkdir -p "$R/class/block" "$R/bus/usb/devices"

# attr DIR NAME VALUE
attr() { mkdir -p "$R$1"; printf '%s\n' "$3" >"$R$1/$2"; }

# blk DEVPATH NAME MAJ:MIN SIZE_SECTORS REMOVABLE [partition-number]
blk() {
	attr "$1" dev "$3"
	attr "$1" size "$4"
	attr "$1" ro 0
	if [ -n "${6:-}" ]; then
		attr "$1" partition "$6"
		printf 'MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=partition\nPARTN=%s\n' "${3%%:*}" "${3##*:}" "$2" "$6" >"$R$1/uevent"
	else
		attr "$1" removable "$5"
		printf 'MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=disk\n' "${3%%:*}" "${3##*:}" "$2" >"$R$1/uevent"
	fi
	ln -s "../..$1" "$R/class/block/$2"
}

# usbdev DEVPATH VID PID SERIAL MANUFACTURER PRODUCT
usbdev() {
	attr "$1" idVendor "$2"
	attr "$1" idProduct "$3"
	[ -n "$4" ] && attr "$1" serial "$4"
	attr "$1" manufacturer "$5"
	attr "$1" product "$6"
	attr "$1" authorized 1
	printf 'DEVTYPE=usb_device\n' >"$R$1/uevent"
}

# usbif DEVPATH CLASS SUBCLASS PROTOCOL [INTERFACE-STRING]
usbif() {
	attr "$1" bInterfaceClass "$2"
	attr "$1" bInterfaceSubClass "$3"
	attr "$1" bInterfaceProtocol "$4"
	[ -n "${5:-}" ] && attr "$1" interface "$5"
	attr "$1" authorized 1
	printf 'DEVTYPE=usb_interface\n' >"$R$1/uevent"
	ln -s "../../..$1" "$R/bus/usb/devices/${1##*/}"
}

P=/devices/pci0000:00

# Internal SATA disk with a partition, and an internal SATA DVD writer.
S=$P/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda
blk $S sda 8:0 1000215216 0
blk $S/sda1 sda1 8:1 1000213168 0 1
blk $P/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sr1 sr1 11:1 2097151 1

# NVMe on PCI.
N=$P/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1
blk $N nvme0n1 259:0 1000215216 0
blk $N/nvme0n1p1 nvme0n1p1 259:1 1000213168 0 1

# Virtual: loop, zram, dm.
blk /devices/virtual/block/loop0 loop0 7:0 204800 0
blk /devices/virtual/block/zram0 zram0 252:0 8388608 0
blk /devices/virtual/block/dm-0 dm-0 254:0 41943040 0

# USB stick (SanDisk Ultra, removable=1) with a partition.
U=$P/0000:00:14.0/usb1/1-2
usbdev $U 0781 5581 4C530001231120115142 SanDisk Ultra
usbif $U/1-2:1.0 08 06 50
S=$U/1-2:1.0/host6/target6:0:0/6:0:0:0/block/sdb
blk $S sdb 8:16 60063744 1
blk $S/sdb1 sdb1 8:17 60061696 0 1

# qemu usb-storage without removable=on: removable=0, still on USB.
U=$P/0000:00:1d.0/0000:01:00.0/usb3/3-1
usbdev $U 46f4 0001 1-0000:01:00.0-1 QEMU "QEMU USB HARDDRIVE"
usbif $U/3-1:1.0 08 06 50
blk $U/3-1:1.0/host2/target2:0:0/2:0:0:0/block/sdc sdc 8:32 131072 0

# USB-SATA enclosure (JMicron, UAS): removable=0.
U=$P/0000:00:14.0/usb2/2-1
usbdev $U 152d 0578 0000000000CA SSD "USB 3.0 Enclosure"
usbif $U/2-1:1.0 08 06 62
blk $U/2-1:1.0/host8/target8:0:0/8:0:0:0/block/sdd sdd 8:48 1953525168 0

# USB multi-card (SD) reader with a card in it.
U=$P/0000:00:14.0/usb1/1-4
usbdev $U 0bda 0129 20100201396000000 Generic "USB2.0-CRW"
usbif $U/1-4:1.0 08 06 50
blk $U/1-4:1.0/host9/target9:0:0/9:0:0:0/block/sde sde 8:64 31116288 1

# USB CD/DVD drive with its SCSI generic node.
U=$P/0000:00:14.0/usb1/1-3
usbdev $U 0e8d 1887 R8RN6GDCD00NL3 "HL-DT-ST" "DVDRAM GP57EB40"
usbif $U/1-3:1.0 08 02 50
D=$U/1-3:1.0/host7/target7:0:0/7:0:0:0
blk $D/block/sr0 sr0 11:0 2097151 1
mkdir -p "$R$D/scsi_generic/sg3"
printf '21:3\n' >"$R$D/scsi_generic/sg3/dev" # git keeps no empty directories

# SD card on the PCI SD host controller (mmc bus): removable=0 on mmc.
M=$P/0000:00:1c.0/0000:02:00.0/mmc_host/mmc0/mmc0:aaaa
attr $M serial 0x1a2b3c4d
attr $M manfid 0x000003
attr $M oemid 0x5344
attr $M name SU08G
blk $M/block/mmcblk0 mmcblk0 179:0 15523840 0
blk $M/block/mmcblk0/mmcblk0p1 mmcblk0p1 179:1 15521792 0 1

# Android phone in MTP mode (vendor-specific interface named "MTP").
U=$P/0000:00:14.0/usb1/1-5
usbdev $U 18d1 4ee1 98281FFAZ009SR Google Pixel
usbif $U/1-5:1.0 ff ff 00 MTP

# Camera in PTP mode (still image class 06).
U=$P/0000:00:14.0/usb1/1-6
usbdev $U 04a9 3218 "" Canon "Canon Digital Camera"
usbif $U/1-6:1.0 06 01 01

# A keyboard: USB, but neither storage nor imaging.
U=$P/0000:00:14.0/usb1/1-7
usbdev $U 046d c31c "" Logitech "USB Keyboard"
usbif $U/1-7:1.0 03 01 01
