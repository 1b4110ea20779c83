<%@ Page Language="C#" %>
