package media

// markedDevice is a device writable because of an exception, as the file
// records name it.
type markedDevice struct {
	mountPoint string
	attrs      map[string]string // device, serial, exception_id, …
}

// exceptionAttrs are the attributes of a file record that name the
// exception and the device.
func exceptionAttrs(d Device, exceptionID string) map[string]string {
	return map[string]string{"device": d.Name, "serial": eventValue(d.Serial), "vendor": d.Vendor, "product": d.Product,
		"exception_id": exceptionID}
}
