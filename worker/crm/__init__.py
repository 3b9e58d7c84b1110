"""CRM adapters behind one interface (``worker.crm.base.CrmAdapter``)."""
