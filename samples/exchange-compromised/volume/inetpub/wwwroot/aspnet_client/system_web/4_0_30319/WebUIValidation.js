// validation
